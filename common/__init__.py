"""What every service shares: settings, logging, errors, metrics and the gRPC server frame."""

CODE_VERSION = "0.1.0"
