"""Export and serving: trained models converted to deployable formats, run by serving runtimes, and
loaded by MLPerf's LoadGen.

Framework-neutral (numpy only at import); the framework parts live in ``torch_impl.export`` and
``tf_impl.export`` and are imported when a format or runtime needs them.

* ``layout``   the one input layout every export shares (dense, padded ids, lengths) and conversions.
* ``formats``  export formats and runtimes by name (checked before anything heavy starts).
* ``manifest`` the JSON written beside each export (inputs, checksum, commit, parity).
* ``export``   train (or not), export, check parity against the native model.
* ``runtimes`` the ``Runtime`` interface and its implementations.
* ``batcher``  the dynamic batcher between LoadGen and a runtime.
* ``loadgen``  the LoadGen driver (SingleStream, Offline, Server and the Server QPS search).
* ``serve``    ``serve`` end to end: model, export, runtime, LoadGen, record.
"""
