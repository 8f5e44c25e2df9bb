def test_health_reports_database_and_cache(api_client, db):
    response = api_client.get("/api/v1/health/")
    assert response.status_code == 200
    assert response.json()["checks"]["database"]["ok"] is True
    assert response.json()["checks"]["cache"]["ok"] is True
