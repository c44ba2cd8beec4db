"""Herd's HTTP gateway: the Ollama and OpenAI APIs in front of the Redis job queue."""
