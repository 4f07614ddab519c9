"""The emotion analyzer: S3 crop events -> Rekognition or local model -> DynamoDB + CloudWatch.

Django-free on purpose: it is the Lambda entry point (analyzer.handler.lambda_handler)
and the SQS worker (analyzer.worker.run_worker) that a management command wraps.
"""
