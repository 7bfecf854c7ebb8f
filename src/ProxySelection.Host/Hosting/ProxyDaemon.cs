using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace ProxySelection.Host.Hosting;

/// <summary>
/// <c>proxysel run</c> on Microsoft.Extensions.Hosting: the engine as a hosted service (<see cref="ProxyService"/>),
/// systemd integration (sd_notify READY=1 once the rules are in, STOPPING=1 on the way out), logging through the
/// console logger with <see cref="PlainConsoleFormatter"/> by default. The host reads no appsettings.json and no
/// environment of its own: <see cref="ProxyConfiguration"/> already did, with its precedence and validation.
/// </summary>
internal static class ProxyDaemon
{
    /// <summary>What the host may take beyond the drain to stop: the engine's dispose waits up to 5 s for the relay, then removes the rules.</summary>
    public static readonly TimeSpan StopMargin = TimeSpan.FromSeconds(20);

    /// <summary>
    /// Builds and runs the host until SIGTERM/SIGINT; returns the exit code: 0, or the class of a start failure
    /// (<see cref="ExitCodes"/>), whose one line the service logged. Proxy:Debug adds the stack trace on stderr.
    /// </summary>
    public static int Run(ProxyConfigurationResult loaded, Func<ProxyConfigurationResult> reload, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(loaded);
        ArgumentNullException.ThrowIfNull(stderr);
        using var host = Build(loaded, reload);
        var service = host.Services.GetRequiredService<ProxyService>();
        try
        {
            host.Run();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            var failure = service.StartFailure;
            if (failure is null)
            {
                // Not the service's start (the host's own machinery): still one line and a code, never a bare trace.
                failure = StartFailures.Classify(e, loaded.Options!, HostFacts.Current());
                stderr.WriteLine("proxysel: failed to start: " + failure.Reason);
            }

            if (loaded.Options!.Debug)
            {
                stderr.WriteLine(service.StartException ?? e);
            }

            return failure.ExitCode;
        }

        return ExitCodes.Ok;
    }

    public static IHost Build(ProxyConfigurationResult loaded, Func<ProxyConfigurationResult> reload)
    {
        ArgumentNullException.ThrowIfNull(loaded);
        var settings = loaded.Options!;
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
        {
            DisableDefaults = true,
            Args = [],
            ContentRootPath = AppContext.BaseDirectory,
            ApplicationName = "proxysel",
        });
        AddSystemd(builder.Services);
        ConfigureLogging(builder.Logging, settings, loaded.Bound?.Configuration.GetSection(ProxyConfiguration.LoggingSection));
        if (loaded.Bound is { } bound)
        {
            // The same registration that checked them: bound by the generated binder, validated again at start.
            builder.Services.AddProxyOptions(bound);
        }

        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = ShutdownTimeoutFor(settings.DrainTimeout));
        builder.Services.Configure<ConsoleLifetimeOptions>(o => o.SuppressStatusMessages = true);
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton(loaded);
        builder.Services.AddSingleton(reload);
        builder.Services.AddSingleton<ProxyService>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ProxyService>());
        return builder.Build();
    }

    /// <summary>The host's stop budget: the drain, then the engine's dispose.</summary>
    public static TimeSpan ShutdownTimeoutFor(TimeSpan drainTimeout) => drainTimeout + StopMargin;

    /// <summary>
    /// <c>AddSystemd</c> acts only under systemd itself (parent pid 1 or a parent named systemd). A notify socket
    /// without that (a container's init, a supervisor speaking sd_notify, the tests) gets the same lifetime and notifier.
    /// </summary>
    private static void AddSystemd(IServiceCollection services)
    {
        services.AddSystemd();
        if (!SystemdHelpers.IsSystemdService() && !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NOTIFY_SOCKET")))
        {
            services.TryAddSingleton<ISystemdNotifier, SystemdNotifier>();
            services.AddSingleton<IHostLifetime, SystemdLifetime>();
        }
    }

    private static void ConfigureLogging(ILoggingBuilder logging, ProxyHostOptions settings, IConfiguration? levels)
    {
        var format = settings.Logging;
        logging.ClearProviders();
        logging.SetMinimumLevel(settings.LogLevel);
        // The host's own lifecycle chatter would break the one-line-per-event stdout.
        logging.AddFilter("Microsoft", LogLevel.Warning);
        // A start failure is the service's one line; the host's "Hosting failed to start" would add a stack trace.
        logging.AddFilter("Microsoft.Extensions.Hosting", settings.Debug ? LogLevel.Warning : LogLevel.None);
        if (levels is not null)
        {
            // Logging:LogLevel by category, over the defaults above (its rules are registered after them).
            logging.AddConfiguration(levels);
        }

        // Registered as AddConsoleFormatter does, without its reflection-based options binding (trimming, Native AOT): the
        // plain formatter reads no options.
        logging.Services.TryAddEnumerable(ServiceDescriptor.Singleton<ConsoleFormatter, PlainConsoleFormatter>());
        logging.AddConsole(o =>
        {
            o.FormatterName = format switch
            {
                LogFormat.Json => ConsoleFormatterNames.Json,
                LogFormat.Systemd => ConsoleFormatterNames.Systemd,
                _ => PlainConsoleFormatter.FormatterName,
            };
            // Everything on stdout, as before; journald takes the level from the systemd format's prefix.
            o.LogToStandardErrorThreshold = LogLevel.None;
            // The packet hook logs per SYN: a stalled stdout (a full pipe, a slow journald) must drop lines, never hold
            // a verdict. The queue is deep enough that only a reader that stopped loses anything.
            o.QueueFullMode = ConsoleLoggerQueueFullMode.DropWrite;
            o.MaxQueueLength = 16_384;
        });
        // AddConsole registers the json and systemd formatters too; AddJsonConsole would also switch the formatter.
        logging.Services.Configure<JsonConsoleFormatterOptions>(o => o.UseUtcTimestamp = true);
        logging.Services.Configure<ConsoleFormatterOptions>(o => o.UseUtcTimestamp = true);
    }
}
