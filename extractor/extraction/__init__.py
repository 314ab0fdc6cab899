"""One source in, one extraction result out: answer schema, prompts, chunking, anchoring, gates. No KB writes."""
