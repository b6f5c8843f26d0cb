"""Face geometry: the 256-px reference crop from 68 landmarks and the DECA 224-px crop."""
