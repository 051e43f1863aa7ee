"""The scoring service's image and Kubernetes manifests say what deploy/README.md promises."""

import yaml

from lead_assets.cli import build_parser
from lead_assets_tests.deploy.harness import DEPLOY


def test_scoring_deployment_is_ready_only_with_a_model_and_needs_its_token():
    deployment, service = list(yaml.safe_load_all((DEPLOY / "k8s" / "scoring.yaml").read_text()))
    assert deployment["kind"] == "Deployment" and service["kind"] == "Service"
    spec = deployment["spec"]
    assert spec["replicas"] >= 2 and spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (container,) = spec["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ping"  # 503 until a champion is loaded
    assert {"secretRef": {"name": "lead-scoring-secrets"}} in container["envFrom"]
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "5050", *container["args"]])
    assert args.poll_seconds <= 10 and args.max_request_bytes > 0


def test_scoring_image_runs_the_service_beyond_loopback_as_a_user():
    text = (DEPLOY / "serving" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["lead-assets", "serve", "--host", "0.0.0.0", "--port", "5050"]' in text
    assert "\nUSER 10001" in text


def test_serve_refuses_to_listen_beyond_loopback_without_a_token(monkeypatch, capsys):
    from lead_assets.cli import main

    monkeypatch.delenv("LEAD_ASSETS_SERVE_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "LEAD_ASSETS_SERVE_TOKEN" in capsys.readouterr().err
