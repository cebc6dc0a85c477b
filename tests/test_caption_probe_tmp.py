import time
def test_probe(trained_run, clip_shards):
    from mmtok.training.checkpoint import load_for_inference
    print(sorted(p.name for p in (trained_run/"checkpoints").iterdir()))
    m, cfg, tok = load_for_inference(trained_run)
    print(cfg.data, cfg.model)
