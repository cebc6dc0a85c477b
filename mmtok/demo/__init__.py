"""The main job end to end (`mmtok demo`): see mmtok/demo/pipeline.py."""
