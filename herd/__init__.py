"""Herd: a self-hosted LLM serving gateway speaking the Ollama and OpenAI APIs."""

__version__ = "0.1.0"
