using System.Text.Json.Nodes;
using ProxySelection.Host.Control;

namespace ProxySelection.Host.Tests.Control;

public sealed class ControlVerbsTests
{
    [Test]
    public void FormatStatus_HeldConnection_RowWithSubflowsBeneath()
    {
        var reply = JsonNode.Parse("""
            {"ok":true,"daemon":{"state":"draining","role":"downgrade","mode":"explicit","policy":"first","proxy_id":1,"priority":8,"ports":[80],"uptime_seconds":75.5,
             "held_connections":1,"held_syns":0,"probes_in_flight":0},
             "connections":[{"client":"198.18.1.2:40000","server":"198.18.3.2:80","role":"downgrade","reason":"CacheMiss","age_seconds":3.21,"bytes_up":82,"bytes_down":123456,
               "mptcp_leg":"client","mptcp_status":"Active","token":"1234abcd","subflow_count":2,
               "subflows":[{"local":"198.18.3.2:80","remote":"198.18.1.2:40000","state":"established","rtt_us":250},
                           {"local":"198.18.3.2:80","remote":"198.18.2.2:41000","state":"established","rtt_us":300}]}],
             "decisions":{"syns":3,"intercepted":1},
             "cache":{"entries":1,"capacity":65536,"hits":0,"misses":1,"evictions":0,"expirations":0,"hit_ratio":0,"facts_rechecked":0,"facts_changed":0}}
            """)!.AsObject();

        var lines = ControlVerbs.FormatStatus(reply).Split('\n');

        Assert.That(lines[0], Is.EqualTo("proxysel draining: role=downgrade mode=explicit policy=first id=1 priority=8 up 1.3m"));
        Assert.That(lines[1], Is.EqualTo("held connections: 1"));
        Assert.That(lines[2], Does.StartWith("CLIENT").And.EndWith("SUBFLOWS"));
        Assert.That(lines[3], Does.StartWith("198.18.1.2:40000  198.18.3.2:80  CacheMiss  3.2s").And.Contains("client:Active").And.EndWith("2"));
        Assert.That(lines[4], Is.EqualTo("    subflow 198.18.3.2:80 <-> 198.18.1.2:40000 established rtt=250us"));
        Assert.That(lines[5], Is.EqualTo("    subflow 198.18.3.2:80 <-> 198.18.2.2:41000 established rtt=300us"));
        Assert.That(lines[6], Is.EqualTo("decisions: syns=3 intercepted=1"));
        Assert.That(lines[7], Is.EqualTo("cache: 1 of 65536 entries, hits=0 misses=1 hit_ratio=0 evictions=0 expirations=0 facts_rechecked=0 facts_changed=0"));
    }

    [Test]
    public void FormatStatus_InstanceId_OnTheDaemonLine()
    {
        var reply = JsonNode.Parse("""
            {"ok":true,"daemon":{"state":"running","role":"downgrade","mode":"explicit","policy":"first","proxy_id":1,"priority":8,"ports":[80],"uptime_seconds":2,
             "held_connections":0,"held_syns":0,"probes_in_flight":0,"instance_id":"inst2"},
             "connections":[],"decisions":{},"cache":{"entries":0,"capacity":65536,"hits":0,"misses":0,"evictions":0,"expirations":0,"hit_ratio":null}}
            """)!.AsObject();

        var first = ControlVerbs.FormatStatus(reply).Split('\n')[0];

        Assert.That(first, Is.EqualTo("proxysel running: role=downgrade mode=explicit policy=first id=1 priority=8 instance=inst2 up 2.0s"));
    }

    [Test]
    public void FormatCache_Entries_TableWithProxyIdWhereKnown()
    {
        var reply = JsonNode.Parse("""
            {"ok":true,"entries":[{"destination":"198.18.3.2:80","state":"TcpOnly","proxy_id":null,"checked":"confirmed","age_seconds":2,"ttl_seconds":598},
                                  {"destination":"[2001:db8:3::2]:443","state":"ProxyBeyond","proxy_id":3,"age_seconds":10,"ttl_seconds":110}],
             "summary":{"entries":2,"capacity":65536,"hits":4,"misses":2,"evictions":0,"expirations":0,"hit_ratio":0.6667,"facts_rechecked":3,"facts_changed":1}}
            """)!.AsObject();

        var lines = ControlVerbs.FormatCache(reply).Split('\n');

        Assert.That(lines[0], Does.StartWith("DESTINATION").And.EndWith("TTL LEFT"));
        Assert.That(lines[1], Does.StartWith("198.18.3.2:80").And.Contains("TcpOnly").And.Contains("confirmed").And.EndWith("10.0m"));
        Assert.That(lines[2], Does.StartWith("[2001:db8:3::2]:443").And.Contains("ProxyBeyond  3").And.EndWith("1.8m"));
        Assert.That(lines[3], Is.EqualTo("cache: 2 of 65536 entries, hits=4 misses=2 hit_ratio=0.6667 evictions=0 expirations=0 facts_rechecked=3 facts_changed=1"));
    }

    [Test]
    public void FormatCache_Empty_SaysSo() =>
        Assert.That(ControlVerbs.FormatCache(JsonNode.Parse("""{"ok":true,"entries":[],"summary":{"entries":0}}""")!.AsObject()), Does.StartWith("cache is empty\n"));

    [Test]
    public void Status_NoDaemon_ExitCodeOneNamingTheSocket()
    {
        using var stdout = new MemoryStream();
        var stderr = new StringWriter();

        Assert.That(Cli.Run(["status", "--socket", "/nonexistent/proxysel-test.sock"], stdout, stderr), Is.EqualTo(ExitCodes.FileNotReadable));
        Assert.That(stderr.ToString(), Does.StartWith("proxysel: cannot reach the control socket /nonexistent/proxysel-test.sock: "));
    }
}
