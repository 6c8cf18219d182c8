"""Generative AI per tenant: prompts as versioned assets, evaluation gates, prompt
rollouts and token limits (domain code: no SDK, no HTTP)."""
