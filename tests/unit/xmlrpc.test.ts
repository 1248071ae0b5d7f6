import { decodeResponse, encodeCall, RpcFault } from '../../src/charm/xmlrpc';

describe('XML-RPC as supervisord speaks it', () => {
  it('encodes a call with strings and booleans, escaping text', () => {
    expect(encodeCall('supervisor.signalProcess', ['a<b', 'USR1', true])).toBe(
      '<?xml version="1.0"?><methodCall><methodName>supervisor.signalProcess</methodName><params><param><value><string>a&lt;b</string></value></param><param><value><string>USR1</string></value></param><param><value><boolean>1</boolean></value></param></params></methodCall>',
    );
  });

  it('decodes arrays of structs with ints, strings, bare strings and empty values', () => {
    const xml = `<?xml version='1.0'?>
<methodResponse>
<params>
<param>
<value><array><data>
<value><struct>
<member>
<name>name</name>
<value><string>agent-1</string></value>
</member>
<member>
<name>pid</name>
<value><int>4242</int></value>
</member>
<member>
<name>spawnerr</name>
<value><string></string></value>
</member>
<member>
<name>description</name>
<value>pid 4242, uptime 0:00:05 &amp; more</value>
</member>
</struct></value>
</data></array></value>
</param>
</params>
</methodResponse>`;
    expect(decodeResponse('supervisor.getAllProcessInfo', xml)).toEqual([{ name: 'agent-1', pid: 4242, spawnerr: '', description: 'pid 4242, uptime 0:00:05 & more' }]);
  });

  it('decodes reloadConfig nesting and booleans', () => {
    const xml = `<?xml version='1.0'?><methodResponse><params><param><value><array><data><value><array><data><value><array><data><value><string>new</string></value></data></array></value><value><array><data></data></array></value><value><array><data/></array></value></data></array></value></data></array></value></param></params></methodResponse>`;
    expect(decodeResponse('supervisor.reloadConfig', xml)).toEqual([[['new'], [], []]]);
    expect(decodeResponse('x', '<methodResponse><params><param><value><boolean>1</boolean></value></param></params></methodResponse>')).toBe(true);
  });

  it('raises a fault with its code and text', () => {
    const xml = `<?xml version='1.0'?><methodResponse><fault><value><struct><member><name>faultCode</name><value><int>70</int></value></member><member><name>faultString</name><value><string>NOT_RUNNING: agent-2</string></value></member></struct></value></fault></methodResponse>`;
    expect(() => decodeResponse('supervisor.signalProcess', xml)).toThrow(new RpcFault('supervisor.signalProcess', 70, 'NOT_RUNNING: agent-2'));
  });
});
