"""The config schema: .proto files mirroring the OD API's field names, numbers and nesting.

The generated ``*_pb2.py`` and ``*_pb2.pyi`` modules are committed; ``python -m
objdet.protos.generate`` regenerates them with grpcio-tools (a dev dependency), and a test
fails when the committed files differ from what the .proto files generate.
"""
