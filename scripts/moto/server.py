"""moto's server, bound to 127.0.0.1, with two gaps in its EC2 model filled.

moto keeps every account's EC2 state apart, and its CopyImage only looks for the source
image in the calling account. Real EC2 lets an account copy an image another account
shared with it (a launch permission for the account, or a public image). That is how
bakery hands images to other accounts, so CopyImage here also finds images in other
accounts' state, but only when they are shared with the caller, exactly as EC2 decides.

moto's CopyImage also ignores TagSpecifications; real EC2 tags the new image as it
creates it. bakery relies on that (a copy carries its build id from the moment it
exists), so CopyImage here applies the image tags of its TagSpecifications.

Usage: server.py [--port N] [--port-file PATH]. Port 0 picks a free port; the chosen
port is written to --port-file once the server listens.
"""

import argparse
import os
import signal
import sys


def share_aware_copy_image():
    from moto.ec2.exceptions import InvalidAMIIdError
    from moto.ec2.models.amis import Ami, AmiBackend
    from moto.ec2.utils import random_ami_id

    original = AmiBackend.copy_image

    def copy_image(self, source_image_id, source_region, name=None, description=None):
        try:
            return original(self, source_image_id, source_region, name, description)
        except InvalidAMIIdError:
            pass
        from moto.ec2.models import ec2_backends

        for account_id, regions in list(ec2_backends.items()):
            if account_id == self.account_id:
                continue
            backend = regions[source_region]
            source = backend.amis.get(source_image_id)
            if source is None:
                continue
            shared = {"UserId": self.account_id} in source.launch_permissions
            if not (shared or source.is_public):
                continue
            ami = Ami(
                self,
                random_ami_id(),
                instance=None,
                source_ami=source,
                name=name,
                description=description,
            )
            self.amis[ami.id] = ami
            return ami
        raise InvalidAMIIdError(source_image_id)

    AmiBackend.copy_image = copy_image


def tagged_copy_image():
    from moto.ec2.responses.amis import AmisResponse

    original = AmisResponse.copy_image

    def copy_image(self):
        result = original(self)
        tags = []
        for spec in self._get_param("TagSpecifications", []):
            if spec.get("ResourceType") == "image":
                tags += spec.get("Tags", [])
        if tags:
            image_id = result.result["ImageId"]
            ami = self.ec2_backend.amis[image_id]
            for tag in tags:
                ami.add_tag(tag["Key"], tag["Value"])
        return result

    AmisResponse.copy_image = copy_image


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    args = parser.parse_args()

    share_aware_copy_image()
    tagged_copy_image()

    from werkzeug.serving import make_server
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        create_backend_app,
    )

    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    port = server.server_port
    os.environ["MOTO_PORT"] = str(port)

    def stop(_signum, _frame):
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, args.port_file)
    print(f"moto listening on http://127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
