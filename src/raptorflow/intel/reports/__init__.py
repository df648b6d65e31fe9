"""Reports: written analyses (markdown) referencing other objects of the organization."""
