"""Every PDF the pipeline writes. Plot functions take results and compute nothing."""
