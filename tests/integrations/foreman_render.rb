# Renders a Foreman provisioning template with Ruby's own ERB for one sample host, as
# Foreman's renderer would: the same trim mode and the helpers the imprint templates
# use (host_param, host_param!, host_param_true?, foreman_url, snippet_if_exists,
# to_json), with Foreman's meanings, over a host described in a JSON file:
#   {"name", "id", "mac", "foreman_url", "token", "params": {…}, "snippets": {…}}
#   ruby foreman_render.rb TEMPLATE HOST.json
require 'erb'
require 'json'

class SampleHost
  attr_reader :name, :id, :mac

  def initialize(h)
    @name = h.fetch('name')
    @id = h.fetch('id')
    @mac = h.fetch('mac')
  end
end

class Renderer
  def initialize(host)
    @data = host
    @host = SampleHost.new(host)
  end

  def host_param(name)
    @data.fetch('params', {})[name]
  end

  # Foreman raises when a required parameter is missing; so does this.
  def host_param!(name)
    v = host_param(name)
    raise "host parameter #{name} is not set for #{@host.name}" if v.nil?
    v
  end

  def host_param_true?(name)
    [true, 'true', '1', 'yes', 'on'].include?(host_param(name))
  end

  def foreman_url(kind)
    "#{@data.fetch('foreman_url')}/unattended/#{kind}?token=#{@data.fetch('token')}"
  end

  def snippet_if_exists(name)
    @data.fetch('snippets', {})[name]
  end

  def to_json(obj)
    JSON.pretty_generate(obj)
  end

  def render(text)
    ERB.new(text, trim_mode: '-').result(binding)
  end
end

template, host = ARGV
abort 'usage: foreman_render.rb TEMPLATE HOST.json' unless template && host
print Renderer.new(JSON.parse(File.read(host))).render(File.read(template))
