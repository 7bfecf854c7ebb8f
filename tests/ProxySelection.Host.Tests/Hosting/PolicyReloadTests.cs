using ProxySelection.Host.Hosting;
using ProxySelection.Negotiation;

namespace ProxySelection.Host.Tests.Hosting;

public sealed class PolicyReloadTests
{
    [Test]
    public void Apply_PolicyPriorityAndTimeouts_ChangeTheLiveOptions()
    {
        var live = new NegotiatorOptions();
        var reload = new PolicyReload(new ProxyHostOptions(), live);

        var line = reload.Apply(Valid(o =>
        {
            o.Policy = SelectionPolicy.Priority;
            o.Priority = 12;
            o.ProbeTimeout = TimeSpan.FromMilliseconds(300);
            o.DrainTimeout = TimeSpan.FromSeconds(3);
        }));

        Assert.Multiple(() =>
        {
            Assert.That(line, Is.EqualTo("proxysel: reloaded policy=Priority priority=12 probe_timeout=300ms drain_timeout=3s"));
            Assert.That(live.Policy, Is.EqualTo(SelectionPolicy.Priority));
            Assert.That(live.Priority, Is.EqualTo(12));
            Assert.That(live.ProbeTimeout, Is.EqualTo(TimeSpan.FromMilliseconds(300)));
            Assert.That(reload.Running.DrainTimeout, Is.EqualTo(TimeSpan.FromSeconds(3)));
        });
    }

    [Test]
    public void Apply_FixedKeyChanged_RefusedWholeAndNothingChanges()
    {
        var live = new NegotiatorOptions();
        var reload = new PolicyReload(new ProxyHostOptions(), live);

        var line = reload.Apply(Valid(o =>
        {
            o.Policy = SelectionPolicy.NearestServer;
            o.Role = ProxyRole.Upgrade;
            o.Ports = [8080];
        }));

        Assert.Multiple(() =>
        {
            Assert.That(line, Is.EqualTo("proxysel: reload refused; these keys only change with a restart: Proxy:Role, Proxy:Ports"));
            Assert.That(live.Policy, Is.EqualTo(SelectionPolicy.First));
            Assert.That(reload.Running.Policy, Is.EqualTo(SelectionPolicy.First));
        });
    }

    [Test]
    public void Apply_InvalidConfiguration_RefusedNamingTheKey()
    {
        var live = new NegotiatorOptions();
        var reload = new PolicyReload(new ProxyHostOptions(), live);

        var line = reload.Apply(new ProxyConfigurationResult(null, null, ["Proxy:Priority: must be 0..15 (a 4-bit wire field) (was 99)"]));

        Assert.That(line, Does.StartWith("proxysel: reload refused, the configuration is invalid").And.Contains("Proxy:Priority: must be 0..15"));
        Assert.That(live.Priority, Is.EqualTo(8));
    }

    private static ProxyConfigurationResult Valid(Action<ProxyHostOptions> change)
    {
        var options = new ProxyHostOptions();
        change(options);
        return new ProxyConfigurationResult(options, ProxyConfiguration.ToEngineOptions(options, new byte[32]), []);
    }
}
