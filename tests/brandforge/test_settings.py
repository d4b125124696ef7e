from brandforge.settings import Settings


def test_a_postgres_store_without_a_driver_gets_psycopg2(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://u@db.internal:5432/mlflow")
    assert Settings().resolved_tracking_uri() == "postgresql+psycopg2://u@db.internal:5432/mlflow"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgres://u@h/m")
    assert Settings().resolved_tracking_uri() == "postgresql+psycopg2://u@h/m"


def test_other_stores_pass_unchanged(monkeypatch):
    for uri in ("http://mlflow:5000", "sqlite:///mlflow.db", "postgresql+psycopg://u@h/m"):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        assert Settings().resolved_tracking_uri() == uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert Settings().resolved_tracking_uri() == "sqlite:///mlflow.db"
