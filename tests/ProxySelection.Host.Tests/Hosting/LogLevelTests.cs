using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ProxySelection.Host.Hosting;

namespace ProxySelection.Host.Tests.Hosting;

/// <summary>Proxy:LogLevel and the Logging:LogLevel section switch the daemon's log levels (the host is built, not run).</summary>
public sealed class LogLevelTests
{
    private const string EngineCategory = "ProxySelection.Engine.ProxyEngine";

    private readonly List<IDisposable> _hosts = [];

    [TearDown]
    public void DisposeHosts() => _hosts.ForEach(h => h.Dispose());

    private ILoggerFactory Loggers(params string[] overrides)
    {
        var loaded = ProxyConfiguration.Load(null, overrides, new MemoryConfigurationSource());
        Assert.That(loaded.Errors, Is.Empty);
        var host = ProxyDaemon.Build(loaded, () => loaded);
        _hosts.Add(host);
        return host.Services.GetRequiredService<ILoggerFactory>();
    }

    [Test]
    public void Default_InformationNotDebug()
    {
        var engine = Loggers().CreateLogger(EngineCategory);

        Assert.That((engine.IsEnabled(LogLevel.Information), engine.IsEnabled(LogLevel.Debug)), Is.EqualTo((true, false)));
    }

    [Test]
    public void ProxyLogLevelDebug_EnginePerPacketLinesOn() =>
        Assert.That(Loggers("Proxy:LogLevel=debug").CreateLogger(EngineCategory).IsEnabled(LogLevel.Debug), Is.True);

    [Test]
    public void LoggingSection_PerCategory_OnlyThatCategory()
    {
        var loggers = Loggers("Logging:LogLevel:ProxySelection.Engine=Debug", "Logging:LogLevel:ProxySelection.Host=Warning");

        Assert.Multiple(() =>
        {
            Assert.That(loggers.CreateLogger(EngineCategory).IsEnabled(LogLevel.Debug), Is.True);
            Assert.That(loggers.CreateLogger("ProxySelection.Host").IsEnabled(LogLevel.Information), Is.False);
        });
    }

    [Test]
    public void Host_ValidatesTheBoundOptionsOnStart()
    {
        var loaded = ProxyConfiguration.Load(null, ["Proxy:ProbeTimeout=300ms", "Proxy:Ports=8080,8081"], new MemoryConfigurationSource());
        using var host = ProxyDaemon.Build(loaded, () => loaded);

        var options = host.Services.GetRequiredService<IOptions<ProxyHostOptions>>().Value;

        Assert.That((options.ProbeTimeout, options.Ports), Is.EqualTo((TimeSpan.FromMilliseconds(300), (IReadOnlyList<int>)[8080, 8081])));
    }
}
