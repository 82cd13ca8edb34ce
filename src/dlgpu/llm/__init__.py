"""LLM inference support: model architectures (``architectures``), weight and KV-cache formats (``formats``), the
memory a model needs to serve (``memory``) and how fast it runs (``perf``). No module here imports torch: they
import in milliseconds and work where no deep-learning stack is installed. Facts come from the package's data
files (``llm/data/*.csv``, each row with its ``source_url``) and from the project's sourced notes (LLM.md), cited
where a rule is used."""
