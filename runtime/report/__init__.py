"""Reports of a finished run: a self-contained HTML page (:mod:`.html`) and
matplotlib plots (:mod:`.plots`), both drawn from an
:class:`~ppl.runtime.result.InferenceResult` and its recorded history."""
