"""The Dockerfile language: its parser and the dispatchers that apply an instruction to an image
config. Below the services (as `oci` is): the builder and `commit`/`import --change` share them."""
