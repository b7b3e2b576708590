"""The otel-llm collector: OTLP in, windowed GenAI quality metrics and alerts out."""
