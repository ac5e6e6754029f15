"""Publishers: local media → URLs the EmpirioLabs service can fetch (see ``base``)."""

__all__: list[str] = []
