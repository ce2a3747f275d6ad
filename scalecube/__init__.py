"""scalecube: clone, decompose and split a web application, and measure it."""
