"""`python -m tenangdb.deploy DIR`: write the example systemd units, the Kubernetes manifests
and the Dockerfile into DIR (the repository's deploy/ folder is this output)."""

import sys
from pathlib import Path

from tenangdb.deploy.kubernetes import DOCKERFILE, render_manifests
from tenangdb.deploy.systemd import example_units


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "deploy")
    for sub in ("kubernetes", "systemd"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    (target / "kubernetes" / "tenangdb.yaml").write_text(render_manifests())
    (target / "Dockerfile").write_text(DOCKERFILE)
    for name, text in example_units().items():
        (target / "systemd" / name).write_text(text)
    print(f"wrote {target}/kubernetes/tenangdb.yaml, {target}/Dockerfile and {target}/systemd/*")


main()
