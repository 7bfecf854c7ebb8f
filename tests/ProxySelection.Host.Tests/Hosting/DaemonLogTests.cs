using System.Net;
using Microsoft.Extensions.Logging;
using ProxySelection.Engine;
using ProxySelection.Host.Hosting;
using ProxySelection.Negotiation;

namespace ProxySelection.Host.Tests.Hosting;

/// <summary>The daemon's own lines (start, drain, stop).</summary>
public sealed class DaemonLogTests
{
    private static string Line(Action<ILogger> log)
    {
        var lines = new List<string>();
        log(new LineLogger(lines.Add));
        return lines.Single();
    }

    [Test]
    public void Daemon_RunningAndDrainingLines_ReadAsBefore()
    {
        Assert.That(Line(l => DaemonLog.Running(l, ProxyRole.Downgrade, SignalingMode.Explicit, SelectionPolicy.First, 1, "80,443", 0)),
            Is.EqualTo("proxysel: running role=Downgrade mode=Explicit policy=First id=1 ports=80,443 queue=0"));
        Assert.That(Line(l => DaemonLog.Draining(l, 1, 40)), Is.EqualTo("proxysel: draining 1 held connection(s) for up to 40 s; new connections pass untouched"));
        Assert.That(Line(l => DaemonLog.Draining(l, 2, 0.25)), Is.EqualTo("proxysel: draining 2 held connection(s) for up to 0.25 s; new connections pass untouched"));
        Assert.That(Line(l => DaemonLog.DrainEnded(l, 1)), Is.EqualTo("proxysel: drain ended with 1 connection(s) still held; closing them"));
    }

    [Test]
    public void Daemon_StoppedLine_CarriesTheCounters() =>
        Assert.That(Line(l => DaemonLog.Stopped(l, new ProxyCounters())), Does.StartWith("proxysel: stopped, rules removed; syns=0 synacks=0 passed=0 "));
}
