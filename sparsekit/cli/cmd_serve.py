"""``sparsekit serve`` (the build service) and ``sparsekit submit`` (its client)."""

from __future__ import annotations

import os
from pathlib import Path

from sparsekit.cli.common import emit, err, out
from sparsekit._io import ensure_writable_target


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve", help="run the engine build service (HTTP API, job queue, engine cache)",
        description="Serve the build API on HOST:PORT (loopback by default). Builds run in fresh worker processes (local executor, one per slot) "
        "or as Ray tasks (--executor ray). State (jobs, uploads, engines) lives in --state-dir and survives restarts. "
        "OpenAPI schema at /docs and /openapi.json.",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; other addresses need tokens)")
    p.add_argument("--port", type=int, default=8700)
    p.add_argument("--state-dir", default=".sparsekit-service", help="jobs database, uploads, engine store (default .sparsekit-service)")
    p.add_argument("--token-file", help="file of accepted bearer tokens, one per line (also SPARSEKIT_TOKENS=a,b); each token sees only the builds it submitted")
    p.add_argument("--admin-token-file", help="file of admin bearer tokens, one per line (also SPARSEKIT_ADMIN_TOKENS=a,b); they see and cancel every build")
    p.add_argument("--max-upload-mib", type=int, default=2048, help="upload limit in MiB, an ONNX or a model archive (default 2048)")
    p.add_argument("--max-unpacked-mib", type=int, default=None, help="most MiB a model archive (.tar, .tar.gz, .zip: one .onnx with its external data) may unpack to (default: --max-upload-mib)")
    p.add_argument("--max-archive-members", type=int, default=4096, help="most files and folders in a model archive (default 4096)")
    p.add_argument("--job-timeout", type=float, default=3600, help="wall-clock limit per build in seconds, ONNX checks and analysis included; a request may ask for less (default 3600)")
    p.add_argument("--upload-idle-timeout", type=float, default=30, help="drop an upload that sends nothing for this many seconds (408; default 30)")
    p.add_argument("--upload-timeout", type=float, default=3600, help="an upload must be complete within this many seconds (408; default 3600)")
    p.add_argument("--max-concurrent-uploads", type=int, default=32, help="uploads received at once; more get 503 with Retry-After (default 32)")
    p.add_argument("--min-free-mib", type=int, default=256, help="free disk space to keep in the state folder; below it uploads get 507 and /readyz fails (default 256)")
    p.add_argument("--unhealthy-after", type=float, default=60, help="/healthz fails when a build slot cannot reach the job store for this many seconds (default 60)")
    p.add_argument("--header-timeout", type=float, default=10, help="close a connection that has not sent a complete request head within this many seconds (408; default 10)")
    p.add_argument("--max-connections-per-ip", type=int, default=32, help="open connections allowed per client IP address; more are answered 429 and closed (default 32)")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--workers", type=int, default=1, help="concurrent builds: one per GPU (default 1)")
    p.add_argument("--ray-address", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--ray-accelerator-type", help="route builds to this Ray accelerator type, e.g. H100 or A100")
    p.set_defaults(func=run_serve)

    s = sub.add_parser(
        "submit", help="submit an ONNX to a build service and optionally wait and download",
        description="Upload an ONNX file with a build spec to 'sparsekit serve'. An identical request returns the cached engine; one submitted "
        "while an identical build runs joins it.",
    )
    s.add_argument("onnx", help="ONNX file, or a .tar/.tar.gz/.zip of one .onnx with its external-data files")
    s.add_argument("--server", default=os.environ.get("SPARSEKIT_SERVER", "http://127.0.0.1:8700"), help="service URL (default $SPARSEKIT_SERVER or http://127.0.0.1:8700)")
    s.add_argument("--spec", help="build spec: a JSON file or inline JSON (fields as in 'sparsekit build')")
    s.add_argument("--backend", help="override the spec's backend (tensorrt, tensorrt-rtx or onnxruntime; see the service's /v1/targets)")
    s.add_argument("--sparse", choices=("off", "on"), help="override the spec's sparse flag")
    s.add_argument("--bench", action="store_true", help="benchmark the engine on the build GPU right after the build")
    s.add_argument("--token", default=os.environ.get("SPARSEKIT_TOKEN"), help="bearer token (default $SPARSEKIT_TOKEN)")
    s.add_argument("--wait", action="store_true", help="wait for the build to finish")
    s.add_argument("--download", metavar="DIR", help="with --wait: download the engine and reports into DIR")
    s.add_argument("--timeout", type=float, default=3600, help="seconds to wait (default 3600)")
    s.add_argument("--build-timeout", type=float, help="wall-clock limit of this build in seconds (default and maximum: the service's --job-timeout)")
    s.add_argument("--json", action="store_true", help="print the final build record as JSON")
    s.set_defaults(func=run_submit)


def run_serve(args) -> int:
    from sparsekit.service.server import serve
    from sparsekit.service.settings import ServiceSettings, read_tokens

    settings = ServiceSettings.from_options(
        state_dir=Path(args.state_dir), host=args.host, port=args.port, tokens=read_tokens(args.token_file),
        admin_tokens=read_tokens(args.admin_token_file, env="SPARSEKIT_ADMIN_TOKENS"), max_upload_mib=args.max_upload_mib,
        max_unpacked_mib=args.max_unpacked_mib, max_archive_members=args.max_archive_members,
        job_timeout_s=args.job_timeout, executor=args.executor, workers=args.workers, ray_address=args.ray_address, ray_accelerator_type=args.ray_accelerator_type,
        upload_idle_timeout_s=args.upload_idle_timeout, upload_timeout_s=args.upload_timeout, max_concurrent_uploads=args.max_concurrent_uploads,
        min_free_mib=args.min_free_mib, unhealthy_after_s=args.unhealthy_after, header_timeout_s=args.header_timeout,
        max_connections_per_ip=args.max_connections_per_ip,
    )
    serve(settings, on_ready=lambda: err.print(f"sparsekit build service on http://{args.host}:{args.port} ({args.executor} executor, {args.workers} slot(s), state in {args.state_dir})"))
    return 0


def run_submit(args) -> int:
    from sparsekit.service.client import BuildClient, load_spec

    spec = load_spec(args.spec, args.backend)
    if args.sparse:
        spec = spec.with_sparse(args.sparse == "on")
    if args.download:
        ensure_writable_target(Path(args.download) / "metadata.json", force=True)  # refuse before uploading
    client = BuildClient(args.server, args.token)
    answer = client.submit(args.onnx, spec, args.bench, timeout_s=args.build_timeout)
    build = answer["build"]
    if not args.json:
        out.print(f"build {build['id']}: {answer['how']} ({build['state']})")
    if args.wait or args.download:
        last = {"state": None}

        def progress(b):
            if b["state"] != last["state"] and not args.json:
                err.print(f"[dim]{b['state']}[/]")
            last["state"] = b["state"]

        build = client.wait(build["id"], args.timeout, progress=progress)
        if args.download:
            folder = Path(args.download)
            names = ["engine", "report.json", "report.md", "metadata.json"] + (["benchmark.json"] if args.bench else [])
            for name in names:
                client.download(build["id"], name, folder / (build["result"]["artifact"] if name == "engine" else name))
            if not args.json:
                out.print(f"downloaded to {folder}")
    if args.json:
        emit(args, build)
    return 0
