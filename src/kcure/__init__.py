"""K-CURE cancer public library pipeline."""
