"""The rules every party applies to client input: the bounds of a request
(`limits`), checks of single values (`fields`), of whole requests (`validate`), the
workflow graph (`dag`) and the error they raise (`errors`).

Pure functions of their arguments, depending only on the generated protobuf code and
the standard library: the SDK checks a request before sending it, the master before
proposing it, and the state machine when it applies it, all with this same code, so
the three agree. The SDK imports these modules without loading the state machine.
"""
