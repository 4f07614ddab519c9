"""StagePulse infrastructure: the CloudFormation template and a Django-free deployer (deploy.py)."""
