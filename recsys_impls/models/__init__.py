"""Model descriptors (framework-neutral): configs, parameter shapes, seeded initialisation, reference forward."""
