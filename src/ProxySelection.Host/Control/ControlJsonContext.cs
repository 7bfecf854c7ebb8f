using System.Text.Json.Serialization;
using ProxySelection.Engine.Diagnostics;

namespace ProxySelection.Host.Control;

/// <summary>
/// The control replies' JSON metadata, generated at build time: a Native AOT (trimmed) daemon has no reflection-based
/// serializer, and the Host project turns it off for every build (<c>JsonSerializerIsReflectionEnabledByDefault</c>), so a
/// reply type missing here fails in the tests, not only in the published daemon.
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(StatusReply))]
[JsonSerializable(typeof(CacheReply))]
[JsonSerializable(typeof(FlushReply))]
[JsonSerializable(typeof(ReloadReply))]
internal sealed partial class ControlJsonContext : JsonSerializerContext;
