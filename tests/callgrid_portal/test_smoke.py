def test_health_reports_database_and_cache(api_client, db):
    response = api_client.get("/api/v1/health/")
    assert response.status_code == 200
    assert response.json()["checks"]["database"]["ok"] is True
    assert response.json()["checks"]["cache"]["ok"] is True


def test_the_wsgi_module_loads_every_view_and_freezes_start_up_objects():
    # In a process of its own: freezing the GC here would reach into the test run.
    import subprocess
    import sys

    script = (
        "import gc, sys; import callgrid_portal.wsgi; "
        "print(gc.get_freeze_count() > 0, 'bidlog.routing.api' in sys.modules, "
        "'bidlog.buyer_pages.api.views' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["True", "True", "True"]
