"""The HTTP side of the other detection servers' protocols (DeepStack / CodeProject.AI beyond
plain detection, Roboflow Inference, KServe V2, DOODS): their views, in `compat.routes`, and the
few request helpers every view shares. The composition root (`serve_http`) wires them into its
route table; each protocol itself lives in `dialects/`."""
