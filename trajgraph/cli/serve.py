"""`trajgraph serve FOLDER`: a trained model folder behind an OpenAI-compatible API (trajgraph.learn.serve)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True)
console = Console(stderr=True)


@app.command("serve")
def serve_cmd(
    folder: Annotated[str, typer.Argument(help="A model folder (config.json, *.safetensors, tokenizer), e.g. from `trajgraph train policy --method sft`.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port, printed).")] = 8000,
    name: Annotated[str | None, typer.Option(help="Model name the API answers to (default: the folder's name).")] = None,
) -> None:
    """Answer POST /v1/chat/completions from FOLDER until interrupted; litellm reaches it as openai/NAME with api_base."""
    from trajgraph.learn.serve import serve

    def ready(server: object) -> None:
        bound = getattr(server, "server_address", (host, port))
        console.print(f"serving {folder} as {name or folder.rstrip('/').split('/')[-1]} on http://{bound[0]}:{bound[1]}/v1", highlight=False)

    try:
        serve(folder, host=host, port=port, name=name, ready=ready)
    except KeyboardInterrupt:
        pass
