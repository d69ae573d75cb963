"""HTTP/1.1 serving for the Engine API and our registry: messages (Request, Response, Hijack), routing,
and the h11 server on asyncio streams. It knows nothing of Docker: each server is a `Site`."""
