"""The one error the infra modules raise."""


class DeployError(RuntimeError):
    """A deploy, status or teardown that did not work; the message is meant for a person."""
