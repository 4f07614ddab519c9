"""Face detector services, one module per subject (callers import the module they need):

- `registry`: model files checked and registered (upload, bundled, training output);
- `gate`: the evaluation gate and promotion;
- `labelled_clips`: the organization's labelled videos, extra gate clips;
- `rollouts`: a promoted model to cameras, and back;
- `training`: SageMaker training jobs, confined to the organization's own S3 prefixes;
- `artifacts`: what they share (the name rule, temporary files, the artifacts bucket).

Every AWS call is a real boto3 call through awsclients (moto in tests and the demo)."""
