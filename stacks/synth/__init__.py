"""The cdktf app: one `ServingStack` per planned environment, synthesized all or nothing,
and the summary `llmstacks synth` prints. The only importer of cdktf besides `infra`."""
