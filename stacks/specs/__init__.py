"""Service specs rendered from a plan: the app's args, the Anyscale service, the Ray Serve
config and the KubeRay RayService; their checks; the app's code package."""
