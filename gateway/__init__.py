"""The REST gateway: browsers speak JSON over HTTP here, the orchestrator speaks gRPC.

The gateway owns no interview state. It validates and limits what browsers send,
translates it to the v1 gRPC contracts, and turns every failure into an RFC 9457
problem document. It never imports orchestrator or scorer code.
"""
