"""The dev container (the seed's ``tao_ws``): ``launcher shell``, its mounts file, and ``launcher doctor``.

Built on the launcher's Docker plumbing (``launcher.docker_client``, ``launcher.images``,
``launcher.run_spec``); the server backends never import from here.
"""
