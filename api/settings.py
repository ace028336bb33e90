"""Settings from the environment (prefix ``LIBSHARE_``), built once at the edge.

``ledger`` never reads the environment; the command line and the service build an
:class:`~ledger.instance.InstanceConfig` from these settings.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ledger.errors import ConfigError
from ledger.instance import InstanceConfig
from ledger.keys import LIGHT_SCRYPT_N, STANDARD_SCRYPT_N

DEMO_PASSWORD = "libshare-demo-only"
"""The keystore password the embedded demo uses; refused everywhere else."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIBSHARE_", extra="ignore")

    data_dir: Path = Path("libshare-data")
    chain_url: str | None = None
    database_url: str | None = None
    ipfs_api: str | None = None
    keystore_password: SecretStr | None = None
    confirmations: int = 0
    anchor_every_entries: int = 1000
    anchor_every_seconds: float = 60.0
    peers_file: Path | None = None
    federation_timeout: float = 10.0

    def instance_config(self, *, demo: bool = False) -> InstanceConfig:
        """The config for ``ledger``; outside the demo an explicit keystore password is required."""
        password = self.keystore_password.get_secret_value() if self.keystore_password else None
        if demo:
            password = password or DEMO_PASSWORD
        elif not password:
            raise ConfigError(
                "no keystore password set",
                hint="set LIBSHARE_KEYSTORE_PASSWORD; keys at rest are always encrypted",
            )
        elif password == DEMO_PASSWORD:
            raise ConfigError(
                "the demo keystore password is not allowed outside `libshare demo`",
                hint="set LIBSHARE_KEYSTORE_PASSWORD to a secret of your own",
            )
        return InstanceConfig(
            data_dir=self.data_dir,
            keystore_password=password,
            chain_url=self.chain_url,
            database_url=self.database_url,
            ipfs_api=self.ipfs_api,
            confirmations=self.confirmations,
            anchor_every_entries=self.anchor_every_entries,
            anchor_every_seconds=self.anchor_every_seconds,
            peers_file=self.peers_file,
            federation_timeout_s=self.federation_timeout,
            # The demo's throwaway keys use geth's light scrypt so it starts in seconds.
            scrypt_n=LIGHT_SCRYPT_N if demo and password == DEMO_PASSWORD else STANDARD_SCRYPT_N,
        )
