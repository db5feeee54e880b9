"""``python -m MedXAILib.training --demo NAME …``: retrain or evaluate a built-in demo model."""

import sys

from .demo_models import main

sys.exit(main())
