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
    public void Apply_AnnounceAddressesChanged_RefusedUntilARestart()
    {
        var reload = new PolicyReload(new ProxyHostOptions(), new NegotiatorOptions());

        var line = reload.Apply(Valid(o => o.AnnounceAddresses = ["198.18.7.1"]));

        Assert.That(line, Is.EqualTo("proxysel: reload refused; these keys only change with a restart: Proxy:AnnounceAddresses"));
        Assert.That(reload.Running.AnnounceAddresses, Is.Empty);
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

    [Test]
    public void Apply_ThreeStepKeyRotation_EachStepInstallsItsKeysInPlace()
    {
        var live = new NegotiatorOptions();
        var running = Keyed(o => o.KeyFile = "old.key", Old);
        var keys = running.Engine!.KeyRing;
        var reload = new PolicyReload(running.Options!, live, keys);

        // 1 accept: the new key verifies; 2 switch: it signs, the old verifies; 3 retire: the old is gone.
        var accept = reload.Apply(Keyed(o => { o.KeyFile = "old.key"; o.VerifyKeyFile = "new.key"; o.VerifyKeyId = 2; }, Old, New));
        var acceptState = (keys.CurrentKeyId, keys.PreviousKeyId);
        var @switch = reload.Apply(Keyed(o => { o.KeyFile = "new.key"; o.KeyId = 2; o.VerifyKeyFile = "old.key"; o.VerifyKeyId = 1; }, New, Old));
        var switchState = (keys.CurrentKeyId, keys.PreviousKeyId);
        var retire = reload.Apply(Keyed(o => { o.KeyFile = "new.key"; o.KeyId = 2; }, New));

        Assert.Multiple(() =>
        {
            Assert.That(accept, Does.EndWith(" key_id=1 verify_key_id=2"));
            Assert.That(acceptState, Is.EqualTo(((byte)1, (byte?)2)));
            Assert.That(@switch, Does.EndWith(" key_id=2 verify_key_id=1"));
            Assert.That(switchState, Is.EqualTo(((byte)2, (byte?)1)));
            Assert.That(retire, Does.EndWith(" key_id=2"));
            Assert.That((keys.CurrentKeyId, keys.PreviousKeyId), Is.EqualTo(((byte)2, (byte?)null)));
        });
    }

    [Test]
    public void Apply_KeyIdReusedForAnotherKey_RefusedWholeAndKeysUnchanged()
    {
        var live = new NegotiatorOptions();
        var running = Keyed(o => o.KeyFile = "old.key", Old);
        var keys = running.Engine!.KeyRing;
        var reload = new PolicyReload(running.Options!, live, keys);

        var line = reload.Apply(Keyed(o => { o.KeyFile = "new.key"; o.Policy = SelectionPolicy.Priority; }, New));

        Assert.Multiple(() =>
        {
            Assert.That(line, Is.EqualTo("proxysel: reload refused; Proxy:KeyId: key id 1 already names another key; a new key needs a new key id (spec §9.4)"));
            Assert.That(live.Policy, Is.EqualTo(SelectionPolicy.First));
            Assert.That(keys.FindConflict(new ProxySelection.Wire.MpProxy.MpProxyKeyRing(1, Old)), Is.Null, "still the old key");
        });
    }

    [Test]
    public void Apply_RandomKeyToOperatorKey_NeedsARestart()
    {
        var live = new NegotiatorOptions();
        var running = Valid(_ => { });
        var reload = new PolicyReload(running.Options!, live, running.Engine!.KeyRing);

        var line = reload.Apply(Keyed(o => { o.KeyFile = "op.key"; o.KeyId = 2; }, New));

        Assert.That(line, Is.EqualTo("proxysel: reload refused; these keys only change with a restart: Proxy:KeyFile"));
    }

    [Test]
    public void Apply_TelemetryChanged_RefusedNamingTheTelemetryKeys()
    {
        var live = new NegotiatorOptions();
        var running = new ProxySelection.Host.Telemetry.TelemetryOptions { Prometheus = { Endpoint = new Uri("http://127.0.0.1:9464/metrics") } };
        var reload = new PolicyReload(new ProxyHostOptions(), live, telemetry: running);

        var changed = Valid(o => o.Policy = SelectionPolicy.Priority) with
        {
            Telemetry = new ProxySelection.Host.Telemetry.TelemetryOptions { Prometheus = { Endpoint = new Uri("http://127.0.0.1:9465/metrics") }, Console = true },
        };
        var line = reload.Apply(changed);

        Assert.Multiple(() =>
        {
            Assert.That(line, Is.EqualTo("proxysel: reload refused; these keys only change with a restart: Telemetry:Console, Telemetry:Prometheus:Endpoint"));
            Assert.That(live.Policy, Is.EqualTo(SelectionPolicy.First), "nothing applied");
        });
    }

    [Test]
    public void Apply_UsersFileContentChangedSamePath_NewUsersCheckedOldOnesRefused()
    {
        var running = WithUsers("alice:old-password\n");
        var users = running.Engine!.Socks!.Credentials!;
        var reload = new PolicyReload(running.Options!, new NegotiatorOptions(), liveUsers: users);

        var line = reload.Apply(WithUsers("alice:new-password\nbob:secret\n"));

        Assert.Multiple(() =>
        {
            Assert.That(line, Does.EndWith(" socks_users=2"));
            Assert.That(users.Verify("alice"u8, "new-password"u8, out var name), Is.True);
            Assert.That(name, Is.EqualTo("alice"));
            Assert.That(users.Verify("alice"u8, "old-password"u8, out _), Is.False, "the old password no longer opens");
            Assert.That(users.Verify("bob"u8, "secret"u8, out _), Is.True);
        });
    }

    private static ProxyConfigurationResult WithUsers(string text)
    {
        var options = new ProxyHostOptions { Socks = "198.18.0.1:1080", SocksUsersFile = "users" };
        var credentials = ProxySelection.Engine.Fronts.SocksCredentials.Parse(text, out var error);
        Assert.That(credentials, Is.Not.Null, error);
        return new ProxyConfigurationResult(options, ProxyConfiguration.ToEngineOptions(options, new byte[32], socksUsers: credentials), []);
    }

    private static readonly byte[] Old = [.. Enumerable.Repeat((byte)0x11, 32)];
    private static readonly byte[] New = [.. Enumerable.Repeat((byte)0x22, 32)];

    private static ProxyConfigurationResult Keyed(Action<ProxyHostOptions> change, byte[] key, byte[]? verifyKey = null)
    {
        var options = new ProxyHostOptions();
        change(options);
        return new ProxyConfigurationResult(options, ProxyConfiguration.ToEngineOptions(options, key, verifyKey), []);
    }

    [Test]
    public void Apply_InstanceChanged_RefusedUntilARestart()
    {
        var reload = new PolicyReload(new ProxyHostOptions(), new NegotiatorOptions());

        var line = reload.Apply(Valid(o => o.Instance = new InstanceSettings { Id = "proxy-9" }));

        Assert.That(line, Is.EqualTo("proxysel: reload refused; these keys only change with a restart: Proxy:Instance"));
        Assert.That(reload.Running.Instance.Id, Is.Null);
    }

    [Test]
    public void Apply_ProbeRateGlobalChanged_RefusedUntilARestart()
    {
        var live = new NegotiatorOptions();
        var reload = new PolicyReload(new ProxyHostOptions(), live);

        var line = reload.Apply(Valid(o => o.ProbeRateGlobal = 100));

        Assert.That(line, Is.EqualTo("proxysel: reload refused; these keys only change with a restart: Proxy:ProbeRateGlobal"));
        Assert.That((reload.Running.ProbeRateGlobal, live.ProbeRateGlobal), Is.EqualTo((512, 512.0)));
    }

    private static ProxyConfigurationResult Valid(Action<ProxyHostOptions> change)
    {
        var options = new ProxyHostOptions();
        change(options);
        return new ProxyConfigurationResult(options, ProxyConfiguration.ToEngineOptions(options, new byte[32]), []);
    }
}
