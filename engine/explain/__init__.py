"""Explanations of features and neurons by a language model, scored as the paper and delphi score them.

    client.py    ChatClient for any OpenAI-compatible chat-completions endpoint (httpx; retries, errors)
    prompts.py   the versioned prompt template (explain, detection, fuzzing, simulation) and its parsers
    examples.py  which examples the explainer sees and which the scorers hold out
    scoring.py   detection and fuzzing (balanced accuracy), simulation (Spearman)
    job.py       the explain job (parallel, resumable, per-unit records), --select, the estimate

Results are stored by ``engine.bundle.explanations`` (a journal beside the bundle, folded into it).
"""
