"""SearchService: a collection served over HTTP by a KubeRay RayService (builders/rayservice.py builds it,
derive.py decides, reconcile.py observes and acts, serve_client.py reads the running application)."""
