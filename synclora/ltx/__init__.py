"""The LTX-2.3 core, shared by the Sync-LoRA backend (`propagate.ltx`), pair generation (`data.i2v`) and training
(`train`), like Lightricks' ltx-core.

- `recipe`: the two-stage run (constants, model assembly, one runner) every caller of the model shares.

- `weights`: where the weights come from (hub with pinned revisions in a lock file, a local folder, offline).
- `lora`: the released LoRA file format (read, save, key renames, target modules) and loading an adapter strictly.
- `prompt`: the cached `3d1t` prompt embedding and running the text connectors on it once.
- `components`: the modules, real (from a diffusers-layout folder) or tiny (`tiny`: random weights, true classes).
- `device`: moving and casting a module only when needed.
- `vae`: frames into and out of the video VAE (resize, tiling, latent normalisation, uint8).
- `convert`: a released single-file checkpoint (ltx-core's layout) into diffusers modules.
- `speed`: opt-in GPU speed levers (attention backend, real fp8 matmuls, ahead-of-time compiled blocks).
- `cli`: `python -m synclora fetch-weights` and `cache-prompt`.

Nothing is imported here, so `import synclora.ltx.weights` does not load diffusers.
"""
