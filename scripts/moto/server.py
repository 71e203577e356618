"""moto's server, bound to 127.0.0.1, with gaps in its EC2 model filled: cross-account
CopyImage of shared images, snapshot and copy TagSpecifications on CreateImage/CopyImage,
DeregisterImage's DeleteAssociatedSnapshots, and a console that ends as cloud-init's does.

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


def tags_by_type(specs):
    """{resource type: [{"Key", "Value"}]} from a request's TagSpecifications."""
    out = {}
    for spec in specs or []:
        out.setdefault(spec["ResourceType"], []).extend(spec.get("Tags", []))
    return out


def image_tag_specifications():
    """EC2 tags an image's new snapshots from `TagSpecification` with ResourceType
    `snapshot`, on CreateImage and CopyImage, and tags a copy from those with
    ResourceType `image`. moto raises NotImplementedError for the first and ignores
    CopyImage's TagSpecifications altogether."""
    from moto.ec2.models.amis import AmiBackend
    from moto.ec2.responses.amis import AmisResponse

    create = AmiBackend.create_image

    def create_image(self, instance_id, name, description, tag_specifications):
        by_type = tags_by_type(tag_specifications)
        rest = [s for s in tag_specifications or [] if s["ResourceType"] != "snapshot"]
        ami = create(self, instance_id, name, description, tag_specifications=rest)
        if by_type.get("snapshot"):
            ami.ebs_snapshot.add_tags({t["Key"]: t["Value"] for t in by_type["snapshot"]})
        return ami

    AmiBackend.create_image = create_image

    copy = AmisResponse.copy_image

    def copy_image(self):
        result = copy(self)
        by_type = tags_by_type(self._get_param("TagSpecifications", []))
        ami = self.ec2_backend.amis[result.result["ImageId"]]
        if by_type.get("image"):
            ami.add_tags({t["Key"]: t["Value"] for t in by_type["image"]})
        if by_type.get("snapshot"):
            ami.ebs_snapshot.add_tags({t["Key"]: t["Value"] for t in by_type["snapshot"]})
        return result

    AmisResponse.copy_image = copy_image


def deregister_with_snapshots():
    """DeregisterImage's DeleteAssociatedSnapshots=true also deletes the image's
    snapshots, as EC2 does; moto ignores the parameter."""
    from moto.ec2.responses.amis import AmisResponse

    deregister = AmisResponse.deregister_image

    def deregister_image(self):
        from moto.core.responses import ActionResult

        ami = self.ec2_backend.amis.get(self._get_param("ImageId"))
        result = deregister(self)
        if ami is not None and str(self._get_param("DeleteAssociatedSnapshots")).lower() == "true":
            gone = self.ec2_backend.snapshots.pop(ami.ebs_snapshot.id, None)
            code = "success" if gone is not None else "client-error"
            return ActionResult(
                {
                    "Return": True,
                    "DeleteSnapshotResults": [
                        {"SnapshotId": ami.ebs_snapshot.id, "ReturnCode": code}
                    ],
                }
            )
        return result

    AmisResponse.deregister_image = deregister_image


def cloud_init_console():
    """A real builder's console ends with cloud-init's "finished" line; moto's sample
    console is a bare kernel log. Without host key fingerprints, as from an image whose
    cloud-init prints none (tests that need them rewrite the answer in the proxy)."""
    from moto.ec2.responses import general

    general.SAMPLE_CONSOLE_OUTPUT += (
        "Cloud-init v. 23.1.2 finished at Mon, 30 Nov 2026 00:00:00 +0000. "
        "Datasource DataSourceEc2Local.  Up 25.30 seconds\n"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    args = parser.parse_args()

    share_aware_copy_image()
    image_tag_specifications()
    deregister_with_snapshots()
    cloud_init_console()

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
